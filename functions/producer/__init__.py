"""The game-events producer Lambda: S3 (or a traffic generator) -> validated events -> Kafka."""
