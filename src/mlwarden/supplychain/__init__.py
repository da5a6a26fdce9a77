"""Supply-chain controls: sign and verify models, scan serialized artifacts, audit dependencies."""
