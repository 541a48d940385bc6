module github.com/phivault/tokenizer/bench

go 1.26.0

require github.com/phivault/tokenizer v0.0.0

require github.com/capitalone/fpe v1.2.1

replace github.com/phivault/tokenizer => ../
