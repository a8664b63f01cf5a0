class Regkit < Formula
  desc "Docker credential helpers and a registry cleanup tool that never loses sibling tags"
  homepage "https://github.com/regkit/regkit"
  # The release workflow fills in the tag's tarball and its sha256; `brew install --HEAD` needs neither.
  url "https://github.com/regkit/regkit/archive/refs/tags/v0.1.0.tar.gz"
  sha256 "0000000000000000000000000000000000000000000000000000000000000000"
  license any_of: ["MIT", "Apache-2.0"]
  head "https://github.com/regkit/regkit.git", branch: "main"

  depends_on "rust" => :build

  conflicts_with "docker-credential-helper-ecr", because: "both install `docker-credential-ecr-login`"

  def install
    # The keyring helper stores in the macOS Keychain as docker-credential-osxkeychain does, and in the
    # Secret Service on Linux.
    helpers = %w[env ecr acr gcr router keyring]
    system "cargo", "install", *std_cargo_args(path: "helpers/cleanup")
    helpers.each do |helper|
      system "cargo", "install", *std_cargo_args(path: "helpers/#{helper}")
    end

    # Man pages and completions come from regkit's own command definition, vendor flags included.
    system bin/"regkit", "generate", "man", buildpath/"generated/man"
    man1.install Dir[buildpath/"generated/man/*.1"]
    helpers.each do |helper|
      binary = { "ecr" => "ecr-login", "router" => "regkit" }.fetch(helper, helper)
      page = buildpath/"packaging/man/docker-credential-#{binary}.1"
      man1.install page if page.exist?
    end
    man1.install buildpath/"packaging/man/regkit-ecr-token.1"
    %w[bash zsh fish].each do |shell|
      system bin/"regkit", "generate", "completions", shell, buildpath/"generated/completions"
    end
    bash_completion.install buildpath/"generated/completions/regkit"
    zsh_completion.install buildpath/"generated/completions/_regkit"
    fish_completion.install buildpath/"generated/completions/regkit.fish"
  end

  test do
    assert_match "regkit #{version}", shell_output("#{bin}/regkit --version")
    helpers = %w[env ecr-login acr gcr regkit keyring]
    helpers.each do |helper|
      assert_match version.to_s, shell_output("#{bin}/docker-credential-#{helper} version")
    end

    # The credential-helper protocol: a hit answers with docker's JSON, a miss with the exact not-found text.
    ENV["DOCKER_REGISTRY_EXAMPLE_COM_USR"] = "brew"
    ENV["DOCKER_REGISTRY_EXAMPLE_COM_PSW"] = "s3cret"
    output = pipe_output("#{bin}/docker-credential-env get", "https://registry.example.com/v2/", 0)
    assert_equal({ "ServerURL" => "https://registry.example.com/v2/", "Username" => "brew", "Secret" => "s3cret" },
                 JSON.parse(output))
    assert_equal "credentials not found in native keychain\n",
                 pipe_output("#{bin}/docker-credential-env get", "other.example.com", 1)

    # configure writes the helper route into a docker config and keeps what was there.
    (testpath/"docker/config.json").write '{"psFormat":"table"}'
    system bin/"regkit", "--docker-config", testpath/"docker", "configure",
           "--registry", "registry.example.com", "--helper", "env"
    config = JSON.parse((testpath/"docker/config.json").read)
    assert_equal "env", config["credHelpers"]["registry.example.com"]
    assert_equal "table", config["psFormat"]
  end
end
