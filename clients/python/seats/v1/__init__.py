"""Generated from protos/seats/v1 by ``make protos``; do not edit the *_pb2 modules by hand."""
