/*
 * received: Received: header formatting (received.h).
 */
#include "smtp/received.h"

#include <stdio.h>
#include <string.h>

void received_date(char *buf, size_t len, time_t when)
{
	struct tm tm;
	gmtime_r(&when, &tm);
	strftime(buf, len, "%a, %d %b %Y %H:%M:%S +0000", &tm);
}

size_t received_format(char *buf, size_t len, const struct received_info *ri)
{
	char date[64];
	char rcpt[600] = "";
	char tls[200] = "";
	received_date(date, sizeof(date), ri->when);
	if (ri->rcpt)
		snprintf(rcpt, sizeof(rcpt), "\r\n\tfor <%s>", ri->rcpt);
	if (ri->tls)
		snprintf(tls, sizeof(tls), "\r\n\t(using %s)", ri->tls);
	char from[640]; /* HELO and rDNS names are at most 255 octets each */
	if (ri->local && ri->uid >= 0)
		snprintf(from, sizeof(from), "localhost (uid %ld)", ri->uid);
	else if (ri->local)
		snprintf(from, sizeof(from), "localhost");
	else
		snprintf(from, sizeof(from), "%s (%s [%s])",
			 ri->helo && ri->helo[0] ? ri->helo : "unknown",
			 ri->rdns ? ri->rdns : "unknown", ri->ip);
	int n = snprintf(buf, len,
			 "Received: from %s%s\r\n"
			 "\tby %s (Fulmar) with %s id %s%s;\r\n"
			 "\t%s\r\n",
			 from, tls, ri->host, ri->proto, ri->id, rcpt, date);
	if (n < 0 || (size_t)n >= len)
		return 0;
	return (size_t)n;
}
