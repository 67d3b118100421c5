"""What the worker, the gate, the offline tools and the CLI share: settings (read once at an
entry point), the wire formats of every topic, the topic definitions, the control topic's
records and their reader, logging, the garbage-collector thresholds, the start-up of the small
HTTP services (the gate, the status page). Imports only the core."""
