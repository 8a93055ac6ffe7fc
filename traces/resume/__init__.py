"""Taking stored runs up again: `traces record --resume` continues interrupted runs from
their last committed step (`resuming`), `--retry-failed` records again the runs that ended
with a provider error (`retry`); both rebuild a run as it was recorded (`recorded`) from
what the store holds (`stored`)."""
