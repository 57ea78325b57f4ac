{
  "targets": [
    {
      "target_name": "cluster_addon",
      "sources": ["<!@(node scripts/paths.js sources)"],
      "include_dirs": ["<!(node scripts/paths.js includeDir)"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "libraries": [
        "-L<!(node scripts/paths.js libDir)",
        "-l:<!(node scripts/paths.js libName)",
        "<!(node scripts/paths.js rpathFlag)"
      ]
    }
  ]
}
