from services.decision.main import main

main()
