from services.fulfilment.main import main

main()
