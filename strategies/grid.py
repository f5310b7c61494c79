"""A grid: resting buy orders below the price and sell orders above it, evenly spaced.

When a buy fills, a sell goes up one step above it; when a sell fills, a buy goes down one step
below it. It earns the spacing on every round trip in a sideways market, and holds inventory in
a trending one. The grid lives in `self.state`, so editing this file while it runs keeps the
orders it already has.
"""

from decimal import Decimal

from botd import OrderStatus, OrderUpdate, Quote, Side, Strategy, param


class Grid(Strategy):
    api_version = 1
    venue = "paper"
    symbol = "BTCUSDT"

    size = param(Decimal("0.001"), min=Decimal("0"), doc="quantity of each order")
    levels = param(3, min=1, max=50, doc="orders on each side of the price")
    spacing = param(Decimal("0.0002"), min=Decimal("0.00001"), doc="step between levels")

    def on_start(self) -> None:
        # client order id -> [side, price]: plain JSON, handed over across reloads and kept
        # across restarts. Orders that ended while this strategy was not running (cancelled at
        # shutdown, say) are dropped; with none left, the grid is laid out afresh.
        live = {o.client_order_id for o in self.open_orders}
        orders = {cid: v for cid, v in self.state.get("orders", {}).items() if cid in live}
        self.state["orders"] = orders
        if not orders:
            self.state["placed"] = False

    def on_quote(self, quote: Quote) -> None:
        if self.state.get("placed"):
            return
        self.state["placed"] = True
        step = quote.mid * self.spacing
        for i in range(1, self.levels + 1):
            self.place(Side.BUY, quote.mid - step * i)
            self.place(Side.SELL, quote.mid + step * i)

    def on_order(self, update: OrderUpdate) -> None:
        orders = self.state["orders"]
        if update.client_order_id not in orders or update.status.is_open:
            return
        side, price = orders.pop(update.client_order_id)
        price = Decimal(price)
        if update.status is OrderStatus.FILLED:
            step = price * self.spacing
            if side == Side.BUY.value:
                self.place(Side.SELL, price + step)
            else:
                self.place(Side.BUY, price - step)
        elif update.status is OrderStatus.REJECTED:
            self.log.warning("grid level lost", side=side, price=str(price), reason=update.reason)

    def place(self, side: Side, price: Decimal) -> None:
        price = price.quantize(self.instrument().tick_size)
        if side is Side.BUY:
            cid = self.buy(self.size, price=price, post_only=True)
        else:
            cid = self.sell(self.size, price=price, post_only=True)
        self.state["orders"][cid] = [side.value, str(price)]
