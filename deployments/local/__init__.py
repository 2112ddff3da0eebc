"""The local twin of the production deployment: the services the platform needs, started on
loopback by the main job and by the tests, and the main job itself."""
