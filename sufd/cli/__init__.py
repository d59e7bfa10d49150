"""Entry points: ``sufd``, ``sufctl``, ``sufd-statusline``, and what they print."""
