"""swarm: identical small-model workers solving a purpose on a Redis blackboard."""

__version__ = "0.1.0"
