"""firebreak: incident response for replicated systems, driven through Ansible."""

__version__ = "0.1.0"
