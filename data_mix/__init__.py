"""data_mix."""
