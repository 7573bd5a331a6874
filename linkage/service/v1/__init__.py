"""Generated gRPC stubs of linkage.v1 (see scripts/gen_protos.py)."""
