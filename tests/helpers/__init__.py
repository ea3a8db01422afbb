"""Test-only helpers: the plugin server tests' requests and flags (``plugin``), the Triton
interpreter cases (``triton_cases``)."""
