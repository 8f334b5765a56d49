"""The BentoML service that serves a pipeline's champion. Imports core/, never dagster."""
