"""Input integrity: CloudTrail digest chains checked offline, audit gaps and silent sources."""
