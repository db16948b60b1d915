// Files, directories, documents, syntax errors, diagnostics (format, order, completeness).

#include <doctest/doctest.h>

#include "config/loader.h"
#include "config_test_util.h"

using namespace infergate::config;
using namespace infergate::config::testing;

TEST_CASE("Diagnostic::format") {
  Diagnostic e{Severity::kError,
               {"gie.yaml", 12, 7},
               "InferenceModel default/x: spec.modelName: required field is missing"};
  CHECK(e.format() ==
        "gie.yaml:12:7: InferenceModel default/x: spec.modelName: required field is missing");
  Diagnostic w{Severity::kWarning, {"gie.yaml", 3, 1}, "careful"};
  CHECK(w.format() == "gie.yaml:3:1: warning: careful");
  Diagnostic i{Severity::kInfo, {"gie.yaml", 1, 1}, "skipping Deployment/foo"};
  CHECK(i.format() == "gie.yaml:1:1: info: skipping Deployment/foo");
  Diagnostic file_only{Severity::kError, {"missing.yaml", 0, 0}, "cannot read"};
  CHECK(file_only.format() == "missing.yaml: cannot read");
  Diagnostic nowhere{Severity::kError, {}, "no configuration file given"};
  CHECK(nowhere.format() == "no configuration file given");
}

TEST_CASE("a directory: *.yaml and *.yml sorted by name, not recursive, no hidden files") {
  const std::string dir = kFixtures + "/dir";
  LoadResult r = load({dir});
  INFO(dump(r));
  REQUIRE(r.ok());
  CHECK(errors(r).empty());
  CHECK(warnings(r).empty());
  const Snapshot& s = *r.snapshot;
  CHECK(s.sources == std::vector<std::string>{dir + "/10-proxy.yaml", dir + "/20-pools.yml",
                                              dir + "/30-models.yaml"});
  CHECK(s.proxy.name == "from-dir");
  REQUIRE(s.pools.size() == 1);
  CHECK(s.pools[0].where.file == dir + "/20-pools.yml");
  CHECK(s.endpoints.size() == 2);
  const ModelRoute* chat = find_model(s, "chat");
  REQUIRE(chat);
  CHECK(chat->where.file == dir + "/30-models.yaml");
  CHECK(chat->where.line == 6);
  CHECK(chat->where.column == 14);
  CHECK(find_objective(s, "batch")->priority == -1);
}

TEST_CASE("several paths: files and directories, each file read once") {
  const std::string dir = kFixtures + "/dir";
  LoadResult r = load({dir + "/10-proxy.yaml", dir});
  INFO(dump(r));
  REQUIRE(r.ok());
  CHECK(r.snapshot->sources.size() == 3);
  CHECK(r.snapshot->sources.front() == dir + "/10-proxy.yaml");
  auto w = warnings(r);
  REQUIRE_MESSAGE(w.size() == 1, joined(w));
  CHECK(w[0] == dir + "/10-proxy.yaml: warning: given more than once; read only the first time");
}

TEST_CASE("missing paths, empty directories, no paths") {
  LoadResult r = load({kFixtures + "/does-not-exist.yaml", kFixtures + "/empty-dir"});
  CHECK_FALSE(r.ok());
  auto e = errors(r);
  CHECK_HAS(e, kFixtures + "/does-not-exist.yaml: cannot read: no such file or directory");
  CHECK_HAS(e, "no ProxyConfig found");
  CHECK_HAS(warnings(r), kFixtures + "/empty-dir: warning: directory has no *.yaml or *.yml files");

  LoadResult none = load({});
  CHECK_FALSE(none.ok());
  CHECK_HAS(errors(none), "no configuration file given");
}

TEST_CASE("every error of every file is reported, in file order") {
  const std::string dir = kFixtures + "/errors";
  LoadResult r = load({dir});
  CHECK_FALSE(r.ok());
  CHECK(r.snapshot == nullptr);
  auto e = errors(r);
  CHECK(e == std::vector<std::string>{
                 dir + "/a-proxy.yaml:5:12: ProxyConfig broken: spec.workers: must be between 0 "
                       "and 1024 (got -1)",
                 // A syntax error stops only its own document...
                 dir + "/b-syntax.yaml:4:5: YAML syntax error: end of map flow not found",
                 // ...the next one is still checked, down to its references.
                 dir + "/b-syntax.yaml:11:19: InferenceModel default/after-the-syntax-error: "
                       "spec.poolRef.name: InferencePool default/missing-pool not found (pools in "
                       "namespace default: llama)",
                 dir + "/c-pool.yaml:6:26: InferencePool default/llama: "
                       "spec.targetPorts[0].number: must be between 1 and 65535 (got 70000)",
             });
}

TEST_CASE("documents: markers, comments, empty documents, '...' ends, CRLF and BOM") {
  const std::string text =
      "\xEF\xBB\xBF# leading comment\r\n"
      "---\r\n"
      "---   # an empty document\r\n"
      "apiVersion: v1\r\n"
      "kind: Service\r\n"
      "metadata: {name: svc}\r\n"
      "...\r\n"
      "--- {apiVersion: v1, kind: ConfigMap, metadata: {name: cm}}\r\n"
      "---\r\n" +
      kProxy +
      "---\nspec: {}\napiVersion: inference.networking.x-k8s.io/v1alpha2\nkind: InferencePool\n"
      "metadata: {name: p}\n";
  LoadResult r = load_string(text, "docs.yaml");
  auto i = infos(r);
  CHECK_HAS(i, "docs.yaml:4:1: info: skipping Service/svc");
  CHECK_HAS(i, "docs.yaml:8:5: info: skipping ConfigMap/cm");
  // The last document: kProxy has 8 lines from line 10, so "spec: {}" is line 19.
  CHECK_HAS(errors(r),
            "docs.yaml:19:7: InferencePool default/p: spec.selector: required field is missing");
}

TEST_CASE("YAML syntax errors carry their location; the loader never throws") {
  LoadResult r = load_string(kProxy + "---\napiVersion: v1\nkind: [Service\n", "bad.yaml");
  CHECK_FALSE(r.ok());
  auto e = errors(r);
  REQUIRE_MESSAGE(e.size() == 1, joined(e));
  // yaml-cpp notices at the end of the input; the location is clamped to the last line.
  CHECK(e[0] == "bad.yaml:11:15: YAML syntax error: end of sequence flow not found");

  for (std::string garbage :
       {std::string("\x00\x01\x02\xff", 4), std::string("[[[["), std::string(": : :"),
        std::string("\t- a\n\t- b"), std::string(20000, '['), std::string("key: &a [*a]"),
        std::string("a: b\n  c: d"), std::string("- 1\n- 2"), std::string("!!binary x")}) {
    LoadResult g;
    CHECK_NOTHROW(g = load_string(garbage, "garbage.yaml"));
    CHECK_FALSE(g.ok());
    CHECK_FALSE(errors(g).empty());
  }
}

TEST_CASE("duplicate keys are errors in every kind") {
  auto r = load_bad(kProxy + kPool + "  targetPorts: [{number: 9000}]\n");
  CHECK_HAS(errors(r),
            "test.yaml:16:3: InferencePool default/llama: spec.targetPorts: duplicate key");
}
