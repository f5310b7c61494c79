"""Market-data feeds: venue streams onto the bus."""
