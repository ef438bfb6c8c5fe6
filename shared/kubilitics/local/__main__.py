from kubilitics.local.server import main

main()
