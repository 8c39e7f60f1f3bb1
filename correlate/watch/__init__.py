"""`pamcorr watch`: follow live sources, judge each new action at once, alert (docs/watch.md)."""
