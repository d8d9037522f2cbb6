module medgemini

go 1.19
