from simulators.app import main

main()
