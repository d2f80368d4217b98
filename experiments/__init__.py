"""The LightningCLI entry point (``python -m experiments``) and one YAML file per experiment."""
