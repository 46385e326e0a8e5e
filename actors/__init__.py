"""Ray actors: one ShardActor per customer shard, plus their supervision."""
