"""Manager analytics: metric definitions, rollups, dashboards and exports."""
