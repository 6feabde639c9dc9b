"""System tests: real C{twistd phantom} processes on loopback addresses."""
