"""distillguard's edge: settings, codecs, topics, the Faust topology, the CLI and tools."""
