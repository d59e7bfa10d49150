# Homebrew formula for sufd (a tap formula; not in homebrew-core).
#
# RELEASE PROCESS: every value marked RELEASE below is a placeholder. For a release:
#   1. python packaging/build_dist.py --outdir dist   (builds and checks sdist + wheel)
#   2. upload dist/sufd-<version>.tar.gz to PyPI
#   3. set `url` to its files.pythonhosted.org URL and `sha256` to `shasum -a 256` of it
#   4. brew update-python-resources packaging/homebrew/sufd.rb   (rewrites every resource
#      block below from the released sdist's dependencies, with their urls and sha256)
#   5. brew install --build-from-source ./packaging/homebrew/sufd.rb && brew test sufd
#      && brew audit --strict --new sufd
#
# Run sufd under EITHER `brew services start sufd` (label homebrew.mxcl.sufd) OR
# `sufd install` (label io.github.sufd), never both: the second daemon would find the first
# one's lock, exit 75, and be relaunched by launchd every ThrottleInterval.
class Sufd < Formula
  include Language::Python::Virtualenv

  desc "Per-user daemon keeping an exact, always-fresh ledger of AI coding-agent costs"
  homepage "https://github.com/sufd/sufd"
  url "https://files.pythonhosted.org/packages/source/s/sufd/sufd-0.1.0.tar.gz" # RELEASE
  sha256 "0000000000000000000000000000000000000000000000000000000000000000" # RELEASE
  license "MIT"

  # watchfiles and orjson are Rust extensions, built from their sdists.
  depends_on "maturin" => :build
  depends_on "rust" => :build
  depends_on "python@3.13"

  # RELEASE: regenerate with `brew update-python-resources` (step 4 above).
  resource "anyio" do
    url "https://files.pythonhosted.org/packages/source/a/anyio/anyio-4.16.0.tar.gz"
    sha256 "0000000000000000000000000000000000000000000000000000000000000000"
  end

  resource "idna" do
    url "https://files.pythonhosted.org/packages/source/i/idna/idna-3.20.tar.gz"
    sha256 "0000000000000000000000000000000000000000000000000000000000000000"
  end

  resource "lockfile" do
    url "https://files.pythonhosted.org/packages/source/l/lockfile/lockfile-0.12.2.tar.gz"
    sha256 "0000000000000000000000000000000000000000000000000000000000000000"
  end

  resource "orjson" do
    url "https://files.pythonhosted.org/packages/source/o/orjson/orjson-3.13.0.tar.gz"
    sha256 "0000000000000000000000000000000000000000000000000000000000000000"
  end

  resource "platformdirs" do
    url "https://files.pythonhosted.org/packages/source/p/platformdirs/platformdirs-4.14.8.tar.gz"
    sha256 "0000000000000000000000000000000000000000000000000000000000000000"
  end

  resource "python-daemon" do
    url "https://files.pythonhosted.org/packages/source/p/python_daemon/python_daemon-3.1.2.tar.gz"
    sha256 "0000000000000000000000000000000000000000000000000000000000000000"
  end

  resource "structlog" do
    url "https://files.pythonhosted.org/packages/source/s/structlog/structlog-26.1.0.tar.gz"
    sha256 "0000000000000000000000000000000000000000000000000000000000000000"
  end

  resource "tomli-w" do
    url "https://files.pythonhosted.org/packages/source/t/tomli_w/tomli_w-1.2.0.tar.gz"
    sha256 "0000000000000000000000000000000000000000000000000000000000000000"
  end

  resource "typing-extensions" do
    url "https://files.pythonhosted.org/packages/source/t/typing_extensions/typing_extensions-4.16.0.tar.gz"
    sha256 "0000000000000000000000000000000000000000000000000000000000000000"
  end

  resource "watchfiles" do
    url "https://files.pythonhosted.org/packages/source/w/watchfiles/watchfiles-1.3.0.tar.gz"
    sha256 "0000000000000000000000000000000000000000000000000000000000000000"
  end

  def install
    virtualenv_install_with_resources
  end

  def caveats
    <<~EOS
      Start sufd now and at login with ONE of:
        brew services start sufd
        sufd install          (its own LaunchAgent / systemd user unit; see `sufd doctor`)
      Not both: the second daemon cannot take the lock and launchd keeps relaunching it.
    EOS
  end

  # The same command line as the plist `sufd install` writes (ProgramArguments): the
  # interpreter of this formula's virtualenv through the stable opt_libexec path, so the
  # service survives `brew upgrade`; `--foreground` (launchd supervises, sufd never forks);
  # and the config file that `sufd install`, `sufd` and `sufctl` use by default (Homebrew
  # expands the leading ~ when it writes the service file).
  service do
    on_macos do
      run [opt_libexec/"bin/python", "-m", "sufd", "run", "--foreground",
           "--config", "~/Library/Application Support/sufd/config.toml"]
      working_dir "~/Library/Application Support/sufd"
      log_path "~/Library/Logs/sufd/launchd.stdout.log"
      error_log_path "~/Library/Logs/sufd/launchd.stderr.log"
      # launchd: sufd logs only warnings to stderr, since launchd never rotates the file.
      environment_variables PYTHONUNBUFFERED: "1", PYTHONUTF8: "1", SUFD_SERVICE_MANAGER: "launchd"
    end
    on_linux do
      run [opt_libexec/"bin/python", "-m", "sufd", "run", "--foreground",
           "--config", "~/.config/sufd/config.toml"]
      log_path "~/.local/state/sufd/log/service.stdout.log"
      error_log_path "~/.local/state/sufd/log/service.stderr.log"
      environment_variables PYTHONUNBUFFERED: "1", PYTHONUTF8: "1", SUFD_SERVICE_MANAGER: "systemd"
    end
    # Restart after a crash or a non-zero exit; a clean exit (`sufd stop`) stays stopped.
    keep_alive successful_exit: false
    process_type :background
    throttle_interval 10
    nice 5
  end

  test do
    assert_match version.to_s, shell_output("#{bin}/sufd --version")
    system bin/"sufctl", "--help"
    ENV["SUFD_CONFIG"] = (testpath/"config.toml").to_s
    paths = JSON.parse(shell_output("#{bin}/sufd paths --json"))
    assert_equal (testpath/"config.toml").to_s, paths["config"]
  end
end
