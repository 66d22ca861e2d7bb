module github.com/sofadb/sofadb

go 1.26
