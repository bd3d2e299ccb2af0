"""What a finished root or image holds: its package database, the SBOM,
licences and the dependency graph."""
