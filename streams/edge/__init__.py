"""What the worker, the offline tools and the CLI share: settings (read once at an entry
point), the wire formats of every topic, the topic definitions, the control topic's records
and their reader, logging, the garbage-collector thresholds. Imports only the core."""
