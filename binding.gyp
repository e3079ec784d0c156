{
  "targets": [
    {
      "target_name": "honeygate",
      "sources": ["native/honeygate.cc"],
      "cflags_cc": ["-Wall", "-Wextra", "-fstack-protector-strong"]
    }
  ]
}
