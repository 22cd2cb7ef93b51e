module ollama-lb/go-oracle

go 1.23
