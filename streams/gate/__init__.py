"""`distillguard gate`: the decision service a gateway asks once per request.

    table.py   the pure part: the decisions in force per account, token buckets, expiry, the
               answer to one check (no I/O, no clock of its own)
    reader.py  the decisions topic read whole, from the beginning, without a consumer group,
               into the table; ready once it has caught up with the ends seen at the start
    server.py  the HTTP checks (nginx `auth_request`, Envoy ext_authz HTTP service), /ready,
               /health, and `run_gate`
"""
