"""The public v1 contract (../shared/CONTRACT.md) as code: event models and the topic registry."""
