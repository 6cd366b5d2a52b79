"""The spend ledger: per tenant, key and model, each charge once, persisted."""
