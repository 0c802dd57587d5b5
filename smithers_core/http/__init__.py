"""HTTP plumbing shared by every host: binding uvicorn, error envelopes, request bodies."""
