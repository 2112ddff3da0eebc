"""What every part of the platform shares: its settings, per component, and the bronze catalog.
Imports nothing of the project, so any part may import it."""
