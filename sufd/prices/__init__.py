"""Every price and cost rule."""
