"""SMS through Twilio's official client on its aiohttp-based async HTTP client. The client is
imported when the first message goes out: it is large, and most relays (and every CLI call)
never send SMS."""

from __future__ import annotations

import aiohttp

from relay.portal.errors import DeliveryUnavailable

SEND_TIMEOUT = 30


class SmsSender:
    def __init__(self, *, account_sid: str, auth_token: str, from_number: str, api_base_url: str) -> None:
        self._account_sid = account_sid
        self._auth_token = auth_token
        self._from_number = from_number
        self._api_base_url = api_base_url.rstrip("/")

    async def send(self, to: str, body: str) -> None:
        from twilio.base.exceptions import TwilioException
        from twilio.http.async_http_client import AsyncTwilioHttpClient
        from twilio.rest import Client

        http = AsyncTwilioHttpClient(timeout=SEND_TIMEOUT)
        try:
            client = Client(self._account_sid, self._auth_token, http_client=http, environment={})
            client.api.base_url = self._api_base_url
            await client.api.v2010.accounts(self._account_sid).messages.create_async(
                to=to, from_=self._from_number, body=body)
        except TwilioException as error:
            raise DeliveryUnavailable(f"Twilio refused the message ({type(error).__name__})") from None
        except (OSError, aiohttp.ClientError):
            raise DeliveryUnavailable("Twilio cannot be reached") from None
        finally:
            await http.close()
