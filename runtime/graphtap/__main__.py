from graphtap.hosts.cli import main

main()
