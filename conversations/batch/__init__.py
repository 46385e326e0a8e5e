"""A shard's batch: the processor that applies one batch of ingest entries in one transaction,
and the participants that take part in every batch (see ``participants.default_participants``)."""
