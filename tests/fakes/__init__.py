"""Hand-written fakes of the services' ports (stores, publisher, budget, channels, gateway),
for unit and component tests: they keep what they are given in memory and behave as the
real adapters' contracts say, so the service layer is tested without Kafka or a database."""
