"""firebreak.lab: a Viewstamped Replication reference cluster with the seed's operational
surface (metrics, admin, logs) for rehearsing incidents."""
