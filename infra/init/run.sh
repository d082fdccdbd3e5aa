#!/usr/bin/env bash
# Command of the one-shot `init` service of docker compose (docker-compose.yml), run once Kafka and LocalStack are
# healthy: the same two steps the native stack performs, against the containers' addresses.
#   1. the Kafka topics (infra/kafka/topics.py; KAFKA_BOOTSTRAP_SERVERS=kafka:29092)
#   2. the producer stack through LocalStack CloudFormation (infra/deploy.py; AWS_ENDPOINT_URL=http://localstack:4566)
# Both steps are idempotent: running the service again changes nothing that is already in place.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

echo "[init] topics on ${KAFKA_BOOTSTRAP_SERVERS:?}"
python infra/kafka/topics.py
echo "[init] producer stack on ${AWS_ENDPOINT_URL:?}"
python infra/deploy.py
echo "[init] done"
