package Bench::Push;

# Blob pushes through the Distribution API, the way clients do them:
#
#   monolithic($base, $repo, $file, $hex)
#       POST /v2/<repo>/blobs/uploads/ (202, Location), then
#       PUT <location>?digest=sha256:<hex> with the file as body (curl -T)
#   chunked($base, $repo, [$chunk_files], $hex)
#       POST, one PATCH per file (Content-Range, curl -T), each to the
#       Location the previous answer gave, then PUT ?digest= (no body)
#   small_pushes($base, $repo, $count, $size, $seed)
#       $count blobs of $size bytes, POST + PUT each, on one keep-alive
#       connection (HTTP::Tiny)
#
# Each returns { secs, bytes } or { error }.

use strict;
use warnings;

use Digest::SHA qw(sha256_hex);
use HTTP::Tiny;
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Time::HiRes qw(time);

use Bench::Util qw(run_cmd);

# HTTP::Tiny writes a request's headers and its body with two writes and
# leaves Nagle's algorithm on: on a kept-alive connection the body then
# waits for the server's delayed ACK (40 ms a request).  Real clients set
# TCP_NODELAY (curl does); so do we.
{
    no warnings 'redefine';
    my $connect = \&HTTP::Tiny::Handle::connect;

    *HTTP::Tiny::Handle::connect = sub {
        my $handle = $connect->(@_);
        setsockopt($handle->{fh}, IPPROTO_TCP, TCP_NODELAY, 1);
        return $handle;
    };
}

sub _http {
    return HTTP::Tiny->new(keep_alive => 1, max_redirect => 0,
                           timeout => 120, agent => 'ngx-registry-bench/1');
}

# an absolute URL for a Location header (absolute or a path)
sub _absolute {
    my ($base, $location) = @_;
    return $location =~ m{^https?://} ? $location : "$base$location";
}

sub _with_digest {
    my ($url, $hex) = @_;
    return $url . ($url =~ /\?/ ? '&' : '?') . "digest=sha256:$hex";
}

# POST: the upload's absolute URL, or dies
sub start_upload {
    my ($http, $base, $repo) = @_;

    my $r = $http->request('POST', "$base/v2/$repo/blobs/uploads/",
                           { headers => { 'Content-Length' => 0 } });

    die "POST uploads: $r->{status} $r->{content}\n"
        unless $r->{status} == 202 && $r->{headers}{location};

    return _absolute($base, $r->{headers}{location});
}

# curl sending $file with $method to $url; returns (status, headers text)
sub _curl_send {
    my ($method, $url, $file, @headers) = @_;

    my @cmd = ('curl', '-sS', '-X', $method, '-T', $file, '-o', '/dev/null',
               '-D', '-', '-H', 'Expect:',
               '-H', 'Content-Type: application/octet-stream');
    push @cmd, '-H', $_ for @headers;

    my ($rc, $out, $err) = run_cmd([@cmd, $url], timeout => 600);
    die "curl $method: exit $rc: $err\n" if $rc;

    my ($status) = $out =~ m{^HTTP/\S+ (\d+)}m;
    return ($status // 0, $out);
}

sub monolithic {
    my ($base, $repo, $file, $hex) = @_;

    my $t0 = time;
    my $ok = eval {
        my $loc = start_upload(_http(), $base, $repo);
        my ($status, $head) = _curl_send('PUT', _with_digest($loc, $hex),
                                         $file);
        die "PUT: $status\n$head" unless $status == 201;
        1;
    };

    return { error => $@ } unless $ok;
    return { secs => time - $t0, bytes => -s $file };
}

sub chunked {
    my ($base, $repo, $files, $hex) = @_;

    my $t0 = time;
    my $bytes = 0;

    my $ok = eval {
        my $http = _http();
        my $loc = start_upload($http, $base, $repo);

        for my $f (@$files) {
            my $size = -s $f;
            my $range = sprintf 'Content-Range: %d-%d', $bytes,
                                $bytes + $size - 1;
            my ($status, $head) = _curl_send('PATCH', $loc, $f, $range);
            die "PATCH: $status\n$head" unless $status == 202;

            my ($next) = $head =~ /^Location:\s*(\S+)/mi;
            die "PATCH: no Location\n$head" unless $next;
            $loc = _absolute($base, $next);
            $bytes += $size;
        }

        my $r = $http->request('PUT', _with_digest($loc, $hex),
                               { headers => { 'Content-Length' => 0 } });
        die "PUT: $r->{status} $r->{content}\n" unless $r->{status} == 201;
        1;
    };

    return { error => $@ } unless $ok;
    return { secs => time - $t0, bytes => $bytes };
}

sub small_pushes {
    my ($base, $repo, $count, $size, $seed) = @_;

    my $pad = 'x' x $size;
    my @blobs = map { substr("$seed $_ " . $pad, 0, $size) } 1 .. $count;
    my @hex = map { sha256_hex($_) } @blobs;

    my $http = _http();
    my $t0 = time;

    for my $i (0 .. $#blobs) {
        my $loc = eval { start_upload($http, $base, $repo) }
            or return { error => $@ };

        my $r = $http->request('PUT', _with_digest($loc, $hex[$i]),
            { headers => { 'Content-Type' => 'application/octet-stream' },
              content => $blobs[$i] });

        return { error => "PUT #$i: $r->{status} $r->{content}" }
            unless $r->{status} == 201;
    }

    return { secs => time - $t0, bytes => $count * $size, count => $count };
}

1;
