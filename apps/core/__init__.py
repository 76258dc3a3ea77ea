"""Platform plumbing shared by the apps: database extensions, broker schema, health."""
