"""The gRPC face of the linkage service (linkage.v1); see docs/API.md."""
