"""One module per `graphtap` sub-command; `hosts.cli` registers them."""
