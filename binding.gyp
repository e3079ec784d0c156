{
  "targets": [
    {
      "target_name": "honeygate",
      "sources": [
        "native/honeygate.cc",
        "native/relay.cc",
        "native/relay_core.cc",
        "native/privileges.cc",
        "native/udp.cc",
        "native/conntrack.cc",
        "native/conntrack_reader.cc"
      ],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-fstack-protector-strong"]
    }
  ]
}
