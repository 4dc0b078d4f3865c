package Bench::Load;

# Load generators and what their output means.  Each returns a hashref;
# {error} is set when the run must not count as a measurement (non-2xx
# answers, socket errors, timeouts, a tool that failed): errors are never
# speed.
#
#   wrk($url, conns => 32, secs => 3, headers => [...], paths => [...])
#       { rps, p50_ms, p99_ms, max_ms, requests }; paths: the requests
#       cycle through these paths (a Lua script), instead of $url's
#   ab_head($url, conns => 32, secs => 3)
#       { rps }: HEAD requests with ApacheBench, two processes (wrk waits
#       for a body after a HEAD answer that has a Content-Length)
#   h2load($url, n => 20000, conns => 32, streams => 10, headers => [...])
#       { rps }
#   curl_get($url)   one GET with curl: { status, bytes, secs }
#   curl_times($url, count => 20)   that many GETs in turn by one curl
#       (one keep-alive connection; 5 if 20 would take over 10 s):
#       { median_ms, times_ms }
#   hyperfine_get($url, bytes => N, runs => 2)   { secs } median of runs

use strict;
use warnings;

use File::Temp ();
use JSON::PP ();
use Time::HiRes ();

use Bench::Util qw(run_cmd spew slurp);

our $THREADS = 2;

my %UNIT = (us => 1e-3, ms => 1, s => 1000, m => 60_000);

sub _latency_ms {
    my ($text) = @_;
    return undef unless defined $text && $text =~ /^([\d.]+)(us|ms|s|m)$/;
    return $1 * $UNIT{$2};
}

my @SCRIPTS;    # File::Temp objects of the Lua scripts, kept until exit

# a wrk script whose requests cycle through @$paths
sub _paths_script {
    my ($paths) = @_;

    my $f = File::Temp->new(SUFFIX => '.lua', UNLINK => 1);
    print $f "local paths = {\n";
    print $f "  \"$_\",\n" for @$paths;
    print $f "}\nlocal i = 0\n",
             "request = function()\n",
             "  i = i % #paths + 1\n",
             "  return wrk.format(nil, paths[i])\n",
             "end\n";
    close $f;

    push @SCRIPTS, $f;
    return "$f";
}

sub wrk_cmd {
    my ($url, %o) = @_;

    my @cmd = ('wrk', '-t', $o{threads} || $THREADS, '-c', $o{conns} || 32,
               '-d', ($o{secs} || 3) . 's', '--latency',
               '--timeout', ($o{timeout} || 10) . 's');
    push @cmd, '-H', $_ for @{ $o{headers} || [] };
    push @cmd, '-s', _paths_script($o{paths}) if $o{paths};

    return (@cmd, $url);
}

sub wrk {
    my ($url, %o) = @_;

    my @cmd = wrk_cmd($url, %o);
    my ($rc, $out, $err) = run_cmd(\@cmd, timeout => ($o{secs} || 3) + 60);

    my $r = parse_wrk($out);
    $r->{raw} = $out;
    $r->{error} ||= "wrk exit $rc: $err" if $rc;

    return $r;
}

sub parse_wrk {
    my ($out) = @_;

    my %r;

    ($r{requests}) = $out =~ /^\s*(\d+) requests in/m;
    ($r{rps}) = $out =~ /^Requests\/sec:\s*([\d.]+)/m;
    $r{p99_ms} = _latency_ms($out =~ /^\s*99%\s+(\S+)/m ? $1 : undef);
    $r{p50_ms} = _latency_ms($out =~ /^\s*50%\s+(\S+)/m ? $1 : undef);
    $r{max_ms} = _latency_ms($out =~ /^[ \t]*Latency[ \t]+\S+[ \t]+\S+[ \t]+(\S+)/m
                             ? $1 : undef);

    my @errors;

    if ($out =~ /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/) {
        push @errors, "socket errors: $&" if $1 + $2 + $3 + $4;
    }
    if ($out =~ /Non-2xx or 3xx responses: (\d+)/) {
        push @errors, "$1 non-2xx/3xx responses" if $1;
    }
    push @errors, 'no requests completed' unless $r{requests};
    push @errors, 'unparsed wrk output' unless defined $r{rps};

    $r{error} = join('; ', @errors) if @errors;

    return \%r;
}

sub ab_head {
    my ($url, %o) = @_;

    my $secs = $o{secs} || 3;
    my $conns = int(($o{conns} || 32) / 2);
    my @cmd = ('ab', '-k', '-i', '-q', '-c', $conns, '-t', $secs,
               '-n', 100_000_000, $url);

    my @pids;
    my @outs = map { File::Temp->new(UNLINK => 1) } 1 .. 2;

    push @pids, Bench::Util::spawn(\@cmd, stdout => "$_", stderr => "$_")
        for @outs;

    my @rc = map { Bench::Util::reap($_, $secs + 60) } @pids;
    my @r = map { parse_ab(slurp("$_")) } @outs;

    my ($bad) = grep { $_->{error} } @r;
    return { error => $bad->{error} } if $bad;
    return { error => "ab exit @rc" } if grep { $_ } @rc;

    return { rps => $r[0]{rps} + $r[1]{rps} };
}

sub parse_ab {
    my ($out) = @_;

    my %r;
    ($r{rps}) = $out =~ /^Requests per second:\s*([\d.]+)/m;
    my ($done) = $out =~ /^Complete requests:\s*(\d+)/m;
    my ($failed) = $out =~ /^Failed requests:\s*(\d+)/m;
    my ($non2xx) = $out =~ /^Non-2xx responses:\s*(\d+)/m;

    my @errors;
    push @errors, 'unparsed ab output: ' . substr($out, 0, 200)
        unless defined $r{rps} && $done;
    push @errors, "$failed failed requests" if $failed;
    push @errors, "$non2xx non-2xx responses" if $non2xx;

    $r{error} = join('; ', @errors) if @errors;
    return \%r;
}

sub h2load {
    my ($url, %o) = @_;

    my @cmd = ('h2load', '-n', $o{n} || 20000, '-c', $o{conns} || 32,
               '-m', $o{streams} || 10, '-t', $o{threads} || $THREADS);
    push @cmd, '-H', $_ for @{ $o{headers} || [] };

    my ($rc, $out, $err) = run_cmd([@cmd, $url], timeout => 300);

    my $r = parse_h2load($out, $o{n} || 20000);
    $r->{raw} = $out;
    $r->{error} ||= "h2load exit $rc: $err" if $rc;

    return $r;
}

sub parse_h2load {
    my ($out, $n) = @_;

    my %r;
    ($r{rps}) = $out =~ /finished in [\d.]+\w*, ([\d.]+) req\/s/;
    my ($ok) = $out =~ /^requests: .*?(\d+) succeeded/m;
    my ($twoxx) = $out =~ /^status codes: (\d+) 2xx/m;

    my @errors;
    push @errors, 'unparsed h2load output' unless defined $r{rps};
    push @errors, "only " . ($ok // 0) . " of $n succeeded"
        unless ($ok // 0) == $n;
    push @errors, "only " . ($twoxx // 0) . " of $n were 2xx"
        unless ($twoxx // 0) == $n;
    push @errors, 'h2load did not negotiate h2'
        if $out =~ /Application protocol: (\S+)/ && $1 ne 'h2';

    $r{error} = join('; ', @errors) if @errors;

    return \%r;
}

sub curl_get {
    my ($url, %o) = @_;

    my @cmd = ('curl', '-sS', '-o', '/dev/null',
               '-w', '%{http_code} %{size_download} %{time_total}');
    push @cmd, '-H', $_ for @{ $o{headers} || [] };
    push @cmd, '-I' if $o{head};

    my ($rc, $out, $err) = run_cmd([@cmd, $url], timeout => 300);
    my ($status, $bytes, $secs) = split ' ', $out;

    my %r = (status => $status // 0, bytes => $bytes // 0, secs => $secs);
    $r{error} = "curl exit $rc: $err" if $rc;
    $r{error} ||= "HTTP $r{status}" unless $r{status} =~ /^2/;
    $r{error} ||= "got $r{bytes} bytes, not $o{bytes}"
        if defined $o{bytes} && $r{bytes} != $o{bytes};

    return \%r;
}

# GETs of $url one after the other, by curl on one kept-alive connection:
# $o{count} of them (20), or only $o{min} (5) when, at the pace of those,
# all of them would take over $o{max_secs} (10 s); each one's time_total,
# and their median (ms)
sub curl_times {
    my ($url, %o) = @_;

    my $count = $o{count} || 20;
    my $min = $o{min} || 5;
    my $t0 = Time::HiRes::time();

    my $r = _curl_batch($url, $min, %o);
    return $r if $r->{error};
    my @ms = @{ $r->{ms} };

    my $pace = (Time::HiRes::time() - $t0) / $min;
    if ($count > $min && $pace * $count <= ($o{max_secs} || 10)) {
        $r = _curl_batch($url, $count - $min, %o);
        return $r if $r->{error};
        push @ms, @{ $r->{ms} };
    }

    return { median_ms => Bench::Util::median(@ms), times_ms => \@ms };
}

sub _curl_batch {
    my ($url, $count, %o) = @_;

    my @cmd = ('curl', '-sS', '-w', '%{http_code} %{size_download} '
               . "%{time_total}\\n");
    push @cmd, '-H', $_ for @{ $o{headers} || [] };
    push @cmd, map { ('-o', '/dev/null', $url) } 1 .. $count;

    my ($rc, $out, $err) = run_cmd(\@cmd, timeout => 600);
    return { error => "curl exit $rc: $err" } if $rc;

    my @lines = split /\n/, $out;
    return { error => 'curl: ' . @lines . " answers of $count" }
        unless @lines == $count;

    my @ms;
    for my $line (@lines) {
        my ($status, $bytes, $secs) = split ' ', $line;
        return { error => "curl: HTTP $status" } unless $status =~ /^2/;
        push @ms, $secs * 1000;
    }

    return { ms => \@ms };
}

# the median wall time of `curl -f URL` (one warm-up, then $runs runs)
sub hyperfine_get {
    my ($url, %o) = @_;

    my $json = File::Temp->new(SUFFIX => '.json', UNLINK => 1);
    my @cmd = ('hyperfine', '-N', '--style', 'none', '--warmup', 1,
               '--runs', $o{runs} || 2, '--export-json', "$json",
               "curl -sSf -o /dev/null $url");

    my ($rc, $out, $err) = run_cmd(\@cmd, timeout => 600);
    return { error => "hyperfine exit $rc: $err$out" } if $rc;

    my $res = eval { JSON::PP->new->decode(slurp("$json")) };
    my $median = $res && $res->{results}[0]{median};

    return defined $median ? { secs => $median }
                           : { error => 'unparsed hyperfine output' };
}

1;
