"""One module per dataset source; each defines a click command named `command`."""
