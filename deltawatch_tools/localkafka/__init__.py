"""A real single-node Apache Kafka (KRaft) from the official jars, for tests and the demo."""
